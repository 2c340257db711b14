"""Neural-ODE machinery. It knows nothing of segmentation (cf. torchdiffeq).

`odeint` integrates a derivative with a solver named in `SOLVERS` (adaptive solves are
differentiated by the adjoint method, `kseg.ode.adjoint`); `ODEBlock` wraps a
Keras layer as the derivative of a serialisable Keras layer; `ConcatConv2D` gives a
derivative the time as an input channel; `ConvODEFunc` is Chen et al.'s conv derivative.
"""

from kseg.ode.block import ConcatConv2D, ODEBlock
from kseg.ode.callbacks import NFELogger, ode_blocks
from kseg.ode.config import SolverConfig
from kseg.ode.functions import ConvODEFunc
from kseg.ode.odeint import MaxStepsExceededError, SolveInfo, odeint
from kseg.ode.solvers import SOLVERS, get_solver

__all__ = [
    "SOLVERS",
    "ConcatConv2D",
    "ConvODEFunc",
    "NFELogger",
    "ODEBlock",
    "MaxStepsExceededError",
    "SolveInfo",
    "SolverConfig",
    "get_solver",
    "ode_blocks",
    "odeint",
]
