"""The neurocompile IR: a graph of small primitives (one dataclass each)."""
from .attention import SSA, IntSSA
from .graph import Graph, Node
from .membrane import CurrentMaxPool, CurrentSum, PositionSum
from .map_attention import (IntNSADAttention, IntSSABin, IntXNORAttention, NSADAttention, SSABin,
                            XNORAttention)
from .neurons import LIF, LeakyNeuron, LoihiLIF
from .ops import Op
from .spike_logic import (CoincidenceInput, HeadSum, IntHeadSum, IntTokenSum, SpikeAnd,
                          SpikeBroadcast, TokenSum)
from .structure import (Add, AlwaysOn, Delay, Flatten, Image, Input, Readout, SpikeMaxPool,
                        Tokens)
from .synapses import BatchNorm, Conv2d, IntConv2d, IntLinear, Linear
from .temporal import IntTemporalLinear, TemporalLinear, TemporalWindow

__all__ = ["Graph", "Node", "Op", "Input", "Delay", "AlwaysOn", "Add", "Tokens", "Image", "Flatten", "SpikeMaxPool", "Readout", "Conv2d",
           "Linear", "BatchNorm", "IntConv2d", "IntLinear", "LIF", "LeakyNeuron", "LoihiLIF", "SSA", "IntSSA",
           "SSABin", "IntSSABin", "XNORAttention", "IntXNORAttention",
           "CurrentSum", "CurrentMaxPool", "PositionSum", "HeadSum", "TokenSum", "IntHeadSum", "IntTokenSum", "SpikeAnd",
           "SpikeBroadcast", "CoincidenceInput", "NSADAttention", "IntNSADAttention",
           "TemporalWindow", "TemporalLinear", "IntTemporalLinear"]
