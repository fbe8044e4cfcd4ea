"""Stem: background jobs, schedules and durable workflows on Trio."""

from ._clock import now as now
from ._envelope import Envelope as Envelope
from ._errors import BrokerUnavailable as BrokerUnavailable
from ._errors import ConfigError as ConfigError
from ._errors import DecodeError as DecodeError
from ._errors import DuplicateTask as DuplicateTask
from ._errors import EncodeError as EncodeError
from ._errors import Retry as Retry
from ._errors import SoftTimeLimitExceeded as SoftTimeLimitExceeded
from ._errors import StemError as StemError
from ._errors import TaskFailed as TaskFailed
from ._errors import TaskRevoked as TaskRevoked
from ._errors import TimeLimitExceeded as TimeLimitExceeded
from ._errors import UnknownTask as UnknownTask
from ._errors import WaitTimeout as WaitTimeout
from ._options import TaskOptions as TaskOptions
from ._ratelimit import RateLimit as RateLimit
from ._result import ErrorInfo as ErrorInfo
from ._result import TaskResult as TaskResult
from ._retry import RetryPolicy as RetryPolicy
from ._states import TaskState as TaskState
from ._version import __version__ as __version__
