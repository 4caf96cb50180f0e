"""Penn Treebank language modelling (Mikolov's split), at word or character level."""
from . import download
from .language import LanguageModelTask, build_vocabulary, encode
from .mnist import MissingDataError

FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
EOS = "<eos>"
WORD_GAP = "_"   # the character-level text marks word boundaries with '_'
LEVELS = ("word", "char")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def word_tokens(lines):
    """Words of each line followed by <eos>."""
    tokens = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def char_tokens(lines):
    """Characters of each line's words with '_' between words, followed by <eos>."""
    tokens = []
    for line in lines:
        tokens.extend(WORD_GAP.join(line.split()))
        tokens.append(EOS)
    return tokens


class PTBTask(LanguageModelTask):
    """PTB from ptb.{train,valid,test}.txt in `data_dir` (default: tasks.download's search order).

    level='word': 10,000-word vocabulary incl. <eos>, metric perplexity. level='char': one token per
    character, '_' between words, <eos> per line, metric bits per character.
    """

    def __init__(self, data_dir=None, level="word", bptt=35):
        if level not in LEVELS:
            raise ValueError(f"ptb task: unknown level {level!r}; expected one of {LEVELS}")
        self.level = level
        self.name = "ptb" if level == "word" else "ptb_char"
        folders = download.search_folders("ptb", data_dir)
        folder = download.first_complete(folders, lambda f, name: (f / name).is_file(), FILES.values())
        if folder is None:
            missing = [n for n in FILES.values() if not any((f / n).is_file() for _, f in folders)]
            raise MissingDataError(download.missing_data_message(
                "ptb", folders, missing or ["a folder holding all three files"],
                f"put the Penn Treebank files {', '.join(FILES.values())} (Mikolov's split; there is no "
                "download) in one of those folders, or pass --data-dir DIR (data_dir=) naming a folder "
                "that has them"))
        self.data_dir = str(folder)
        tokenize = word_tokens if level == "word" else char_tokens
        tokens = {split: tokenize(read_lines(folder / name)) for split, name in FILES.items()}
        itos, stoi = build_vocabulary(tokens["train"])
        unknown = "<unk>" if level == "word" else None
        streams = {split: encode(toks, stoi, f"ptb task ({folder / FILES[split]})", unknown)
                   for split, toks in tokens.items()}
        self.setup(streams, itos, bptt)

    def config(self):
        return {"name": self.name, "data_dir": self.data_dir, "level": self.level, "bptt": self.bptt,
                "vocab": self.vocab_size}
