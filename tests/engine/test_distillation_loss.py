"""F.distillation_loss: alpha = 0 is the hard loss, the soft term is the KL formula, gradient check, bad input."""
import numpy as np
import pytest

import engine
import engine.ops as F


def logits(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def test_alpha_zero_is_plain_cross_entropy():
    student = engine.Tensor(logits((5, 7), 0), requires_grad=True)
    labels = np.array([0, 3, 6, 2, 2])
    hard = F.cross_entropy(student, labels)
    mixed = F.distillation_loss(student, engine.Tensor(logits((5, 7), 1)), hard, 3.0, 0.0)
    assert float(mixed.item()) == float(F.cross_entropy(student, labels).item())


def test_soft_term_matches_the_kl_formula_and_vanishes_for_a_matching_teacher():
    s, t, temp = logits((4, 6), 2), logits((4, 6), 3), 2.5
    student = engine.Tensor(s)
    hard = F.cross_entropy(student, np.array([1, 0, 5, 2]))
    got = float(F.distillation_loss(student, engine.Tensor(t), hard, temp, 1.0).item())

    def log_softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    p, log_p, log_q = np.exp(log_softmax(t / temp)), log_softmax(t / temp), log_softmax(s / temp)
    expected = temp ** 2 * np.mean(np.sum(p * (log_p - log_q), axis=-1))
    assert got == pytest.approx(expected, rel=1e-10)
    same = float(F.distillation_loss(student, engine.Tensor(s.copy()), hard, temp, 1.0).item())
    assert abs(same) < 1e-12
    half = float(F.distillation_loss(student, engine.Tensor(t), hard, temp, 0.5).item())
    assert half == pytest.approx(0.5 * float(hard.item()) + 0.5 * expected, rel=1e-10)


def test_distillation_loss_gradcheck():
    labels = np.array([2, 0, 1])
    teacher = engine.Tensor(logits((3, 4), 5))

    def objective(student):
        return F.distillation_loss(student, teacher, F.cross_entropy(student, labels), 2.0, 0.7)

    assert engine.gradcheck(objective, engine.Tensor(logits((3, 4), 4), requires_grad=True))


def test_distillation_loss_rejects_bad_input():
    student = engine.Tensor(logits((3, 4), 0))
    hard = F.cross_entropy(student, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="teacher logits have shape"):
        F.distillation_loss(student, engine.Tensor(logits((3, 5), 1)), hard, 2.0, 0.5)
    with pytest.raises(ValueError, match="alpha must be in"):
        F.distillation_loss(student, engine.Tensor(logits((3, 4), 1)), hard, 2.0, 1.5)
