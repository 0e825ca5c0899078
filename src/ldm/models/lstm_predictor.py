"""LSTM predictor with an MLP head (the wobbly experiment's "RNN + MLP prediction network", paper Sec. 7.1,
App. B; predictive.md §4.1).

The encodings z_0 … z_{T−1} [B, T, d] run through a one-layer LSTM (hidden 10, zero initial state);
the head MLP 10 → 20 → 20 → d (ReLU) maps each hidden state h_t to p_t, the prediction of z_{t+1}
(the mean of the Gaussian predictive distribution N(p_t, I); all wobbly configs use unit variance).
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn


class LSTMPredictor(nn.Module):
    """p_t = head(LSTM(z_0..z_t)) predicts z_{t+1}; ``forward`` returns (p [B, T, d], h [B, T, H])."""

    def __init__(self, state_dim: int = 2, rnn_hidden: int = 10, head_hidden: Sequence[int] = (20, 20)) -> None:
        super().__init__()
        if state_dim < 1 or rnn_hidden < 1 or any(int(h) < 1 for h in head_hidden):
            raise ValueError(f"LSTMPredictor: bad sizes state_dim={state_dim}, rnn_hidden={rnn_hidden}, "
                             f"head_hidden={list(head_hidden)}")
        self.rnn = nn.LSTM(input_size=state_dim, hidden_size=rnn_hidden, num_layers=1, batch_first=True)
        layers: list[nn.Module] = []
        d = rnn_hidden
        for h in head_hidden:
            layers += [nn.Linear(d, int(h)), nn.ReLU()]
            d = int(h)
        layers.append(nn.Linear(d, state_dim))
        self.head = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h, _ = self.rnn(z)
        return self.head(h), h
