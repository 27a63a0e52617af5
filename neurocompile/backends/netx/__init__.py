"""lava-dl netx HDF5 export of the integer graph (chains of Dense / Conv blocks into CUBA LIFs)."""
from .export import BIAS_EXP, RESET_OFFSET, netx_predictions, plan, run_netx, write_netx

__all__ = ["write_netx", "run_netx", "plan", "netx_predictions", "BIAS_EXP", "RESET_OFFSET"]
