"""Hand-written NumPy reference cells (RNN, LSTM, GRU) used to check the generated kernels."""
