"""gradxform: composable, jit-compiled gradient transformations for JAX.

The whole public API is re-exported here (``import gradxform as gx``); every state type
included. Where things live:

- ``base``: the protocol (``GradientTransformation``, ``chain``, ``apply_updates``, ...);
- ``optimizers/``: one module per family (``scale_by_*`` primitives and named aliases);
- ``wrappers/``: transforms around transforms (selectors, masking, conditional steps,
  accumulation, lookahead, plateaus, projections);
- ``fullbatch/``: line searches, L-BFGS, nonlinear CG and ``minimize``;
- generic pieces at the top: ``scaling``, ``clipping``, ``weight_decay``, ``noise``,
  ``schedules``, ``losses``, ``tree``, ``hyperparameters``, ``monitoring``, ``logging``,
  ``layout``;
- private machinery in ``_module`` (the frozen-pytree dataclasses), ``_checks``
  (validation) and ``_leafwise`` (dtype and slot rules).
"""

from . import logging as logging

# Type aliases
from ._typing import OptState as OptState
from ._typing import Params as Params
from ._typing import PyTree as PyTree
from ._typing import Scalar as Scalar
from ._typing import ScalarOrSchedule as ScalarOrSchedule
from ._typing import Updates as Updates

# The protocol
from .base import ChainState as ChainState
from .base import EmptyState as EmptyState
from .base import GradientTransformation as GradientTransformation
from .base import apply_updates as apply_updates
from .base import chain as chain
from .base import identity as identity
from .base import set_to_zero as set_to_zero
from .base import stateless as stateless
from ._module import Module as Module
from ._checks import check_tree_structure as check_tree_structure

# Optimizers, one module per family
from .optimizers.sgd import EmaState as EmaState
from .optimizers.sgd import MomentumState as MomentumState
from .optimizers.sgd import ema as ema
from .optimizers.sgd import heavy_ball as heavy_ball
from .optimizers.sgd import momentum as momentum
from .optimizers.sgd import nesterov as nesterov
from .optimizers.sgd import scale_by_momentum as scale_by_momentum
from .optimizers.sgd import sgd as sgd
from .optimizers.adagrad import RssState as RssState
from .optimizers.adagrad import adagrad as adagrad
from .optimizers.adagrad import scale_by_rss as scale_by_rss
from .optimizers.rmsprop import RmsState as RmsState
from .optimizers.rmsprop import rmsprop as rmsprop
from .optimizers.rmsprop import scale_by_rms as scale_by_rms
from .optimizers.adadelta import AdadeltaState as AdadeltaState
from .optimizers.adadelta import adadelta as adadelta
from .optimizers.adadelta import scale_by_adadelta as scale_by_adadelta
from .optimizers.adam import AdamState as AdamState
from .optimizers.adam import NadamState as NadamState
from .optimizers.adam import adam as adam
from .optimizers.adam import adamw as adamw
from .optimizers.adam import amsgrad as amsgrad
from .optimizers.adam import nadam as nadam
from .optimizers.adam import scale_by_adam as scale_by_adam
from .optimizers.adam import scale_by_nadam as scale_by_nadam
from .optimizers.adamax import AdamaxState as AdamaxState
from .optimizers.adamax import adamax as adamax
from .optimizers.adamax import scale_by_adamax as scale_by_adamax
from .optimizers.radam import radam as radam
from .optimizers.radam import scale_by_radam as scale_by_radam
from .optimizers.lion import LionState as LionState
from .optimizers.lion import lion as lion
from .optimizers.lion import scale_by_lion as scale_by_lion
from .optimizers.dpsgd import dpsgd as dpsgd
from .optimizers.trust_ratio import lamb as lamb
from .optimizers.trust_ratio import lars as lars
from .optimizers.trust_ratio import scale_by_trust_ratio as scale_by_trust_ratio
from .optimizers.novograd import NovogradState as NovogradState
from .optimizers.novograd import novograd as novograd
from .optimizers.novograd import scale_by_novograd as scale_by_novograd
from .optimizers.muon import MuonState as MuonState
from .optimizers.muon import muon as muon
from .optimizers.muon import scale_by_muon as scale_by_muon
from .optimizers.rprop import RpropState as RpropState
from .optimizers.rprop import rprop as rprop
from .optimizers.rprop import scale_by_rprop as scale_by_rprop
from .optimizers.asgd import ASGDState as ASGDState
from .optimizers.asgd import asgd as asgd
from .optimizers.asgd import scale_by_asgd as scale_by_asgd
from .optimizers.prodigy import ProdigyState as ProdigyState
from .optimizers.prodigy import prodigy as prodigy
from .optimizers.prodigy import scale_by_prodigy as scale_by_prodigy
from .optimizers.dadapt import DAdaptAdamState as DAdaptAdamState
from .optimizers.dadapt import dadapt_adamw as dadapt_adamw
from .optimizers.dadapt import scale_by_dadapt_adam as scale_by_dadapt_adam
from .optimizers.dog import DoGState as DoGState
from .optimizers.dog import dog as dog
from .optimizers.dog import ldog as ldog
from .optimizers.dog import scale_by_dog as scale_by_dog
from .optimizers.schedule_free import ScheduleFreeState as ScheduleFreeState
from .optimizers.schedule_free import scale_by_schedule_free as scale_by_schedule_free
from .optimizers.schedule_free import schedule_free_adamw as schedule_free_adamw
from .optimizers.schedule_free import schedule_free_sgd as schedule_free_sgd
from .optimizers.adabelief import BeliefState as BeliefState
from .optimizers.adabelief import adabelief as adabelief
from .optimizers.adabelief import scale_by_belief as scale_by_belief
from .optimizers.yogi import YogiState as YogiState
from .optimizers.yogi import scale_by_yogi as scale_by_yogi
from .optimizers.yogi import yogi as yogi
from .optimizers.adan import AdanState as AdanState
from .optimizers.adan import adan as adan
from .optimizers.adan import scale_by_adan as scale_by_adan
from .optimizers.sm3 import Sm3State as Sm3State
from .optimizers.sm3 import scale_by_sm3 as scale_by_sm3
from .optimizers.sm3 import sm3 as sm3
from .optimizers.adafactor import ScaleByAdafactorState as ScaleByAdafactorState
from .optimizers.adafactor import adafactor as adafactor
from .optimizers.adafactor import scale_by_adafactor as scale_by_adafactor
from .optimizers._quantize import Int8Blocks as Int8Blocks

# Generic pieces
from .scaling import ScaleByLearningRateState as ScaleByLearningRateState
from .scaling import ScaleByScheduleState as ScaleByScheduleState
from .scaling import centralize as centralize
from .scaling import scale as scale
from .scaling import scale_by_learning_rate as scale_by_learning_rate
from .scaling import scale_by_schedule as scale_by_schedule
from .scaling import scale_by_sign as scale_by_sign
from .clipping import ClipByGlobalNormState as ClipByGlobalNormState
from .clipping import clip as clip
from .clipping import clip_by_global_norm as clip_by_global_norm
from .clipping import ZeroNansState as ZeroNansState
from .clipping import adaptive_grad_clip as adaptive_grad_clip
from .clipping import zero_nans as zero_nans
from .privacy import AddDpNoiseState as AddDpNoiseState
from .privacy import add_dp_noise as add_dp_noise
from .privacy import clip_per_example as clip_per_example
from .weight_decay import WeightDecayState as WeightDecayState
from .weight_decay import add_decayed_weights as add_decayed_weights
from .weight_decay import add_l1_subgradient as add_l1_subgradient
from .weight_decay import proximal_l1 as proximal_l1
from .noise import AddNoiseState as AddNoiseState
from .noise import add_noise as add_noise
from ._schedule import Schedule as Schedule
from .schedules import constant_schedule as constant_schedule
from .schedules import cosine_decay_schedule as cosine_decay_schedule
from .schedules import exponential_decay as exponential_decay
from .schedules import inverse_time_decay as inverse_time_decay
from .schedules import join_schedules as join_schedules
from .schedules import linear_schedule as linear_schedule
from .schedules import one_cycle_schedule as one_cycle_schedule
from .schedules import piecewise_constant_schedule as piecewise_constant_schedule
from .schedules import polynomial_schedule as polynomial_schedule
from .schedules import sgdr_schedule as sgdr_schedule
from .schedules import warmup_cosine_decay_schedule as warmup_cosine_decay_schedule
from .losses import bernoulli_log_likelihood as bernoulli_log_likelihood
from .losses import categorical_log_likelihood as categorical_log_likelihood
from .losses import gaussian_nll as gaussian_nll
from .losses import huber_loss as huber_loss
from .losses import l2_loss as l2_loss
from .losses import mean_squared_error as mean_squared_error
from .losses import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from .losses import softmax_cross_entropy as softmax_cross_entropy
from .losses import squared_error as squared_error
from .tree import global_norm as global_norm
from .tree import tree_add as tree_add
from .tree import tree_scale as tree_scale
from .tree import tree_sub as tree_sub
from .tree import tree_sum as tree_sum
from .tree import tree_vdot as tree_vdot
from .tree import tree_zeros_like as tree_zeros_like
from .tree import incremental_update as incremental_update
from .hyperparameters import hyperparams as hyperparams
from .hyperparameters import replace as replace
from .monitoring import MonitorState as MonitorState
from .monitoring import metrics as metrics
from .monitoring import monitor as monitor
from .layout import ParamLayout as ParamLayout
from .layout import flat_params as flat_params

# Wrappers
from .wrappers.selectors import match as match
from .wrappers.selectors import where as where
from .wrappers.masking import MaskedState as MaskedState
from .wrappers.masking import PartitionState as PartitionState
from .wrappers.masking import freeze as freeze
from .wrappers.masking import masked as masked
from .wrappers.masking import partition as partition
from .wrappers.conditional import ApplyIfFiniteState as ApplyIfFiniteState
from .wrappers.conditional import ConditionallyTransformState as ConditionallyTransformState
from .wrappers.conditional import apply_if_finite as apply_if_finite
from .wrappers.conditional import conditionally_transform as conditionally_transform
from .wrappers.conditional import SkipLargeUpdatesState as SkipLargeUpdatesState
from .wrappers.conditional import skip_large_updates as skip_large_updates
from .wrappers.projections import keep_params_nonnegative as keep_params_nonnegative
from .wrappers.projections import project as project
from .wrappers.accumulate import AccumulateState as AccumulateState
from .wrappers.accumulate import accumulate as accumulate
from .wrappers.lookahead import LookaheadState as LookaheadState
from .wrappers.lookahead import lookahead as lookahead
from .wrappers.plateau import ReduceOnPlateauState as ReduceOnPlateauState
from .wrappers.plateau import reduce_on_plateau as reduce_on_plateau
from .wrappers.averaging import EmaParamsState as EmaParamsState
from .wrappers.averaging import SwaState as SwaState
from .wrappers.averaging import ema_params as ema_params
from .wrappers.averaging import eval_params as eval_params
from .wrappers.averaging import swa as swa
from .wrappers.sam import SamState as SamState
from .wrappers.sam import sam as sam
from .wrappers.loss_scale import DynamicLossScaleState as DynamicLossScaleState
from .wrappers.loss_scale import dynamic_loss_scale as dynamic_loss_scale
from .wrappers.loss_scale import loss_scale as loss_scale
from .sharding import Zero1State as Zero1State
from .sharding import zero1 as zero1
from .sharding import zero1_spec as zero1_spec

# Full-batch optimization
from .fullbatch.linesearch import LineSearch as LineSearch
from .fullbatch.linesearch import LineSearchState as LineSearchState
from .fullbatch.linesearch import LineSearchStatus as LineSearchStatus
from .fullbatch.linesearch import backtracking_linesearch as backtracking_linesearch
from .fullbatch.linesearch import gradient_descent_linesearch as gradient_descent_linesearch
from .fullbatch.zoom import zoom_linesearch as zoom_linesearch
from .fullbatch.lbfgs import LbfgsState as LbfgsState
from .fullbatch.lbfgs import lbfgs as lbfgs
from .fullbatch.lbfgs import scale_by_lbfgs as scale_by_lbfgs
from .fullbatch.cg import CgState as CgState
from .fullbatch.cg import conjugate_gradient as conjugate_gradient
from .fullbatch.cg import scale_by_conjugate_gradient as scale_by_conjugate_gradient
from .fullbatch.minimize import MinimizeResult as MinimizeResult
from .fullbatch.minimize import MinimizeStatus as MinimizeStatus
from .fullbatch.minimize import minimize as minimize

# Checkpoints
from .checkpoint import load as load
from .checkpoint import load_state_dict as load_state_dict
from .checkpoint import save as save
from .checkpoint import state_dict as state_dict

__version__ = "0.1.0"
