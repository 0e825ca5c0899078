"""Experiment ``hippocampus``: Kalman LDM on hc-11 place-cell spikes with position decoding and 95 % intervals (paper Sec. 6.1, Fig. 4E-G, A4C)."""
