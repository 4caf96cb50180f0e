"""The four compression methods (wavelet, basis, tucker, lowrank) and the report that counts them."""
