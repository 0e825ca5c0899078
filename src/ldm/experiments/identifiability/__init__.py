"""The ``identifiability`` experiment (paper Sec. 7.1, Fig. 5, A6, A7): predictive LDM with an MLP encoder and
an LSTM predictor recovers the state of the wobbly system up to an affine map."""
