"""rstrace: find failed TCP connections and the RST packets behind them."""

__version__ = "0.1.0"
