"""The actor kernel: bounded mailboxes, actors with tell/ask, supervisors."""

from ._actor import Actor as Actor
from ._actor import ActorRef as ActorRef
from ._actor import ActorStatistics as ActorStatistics
from ._actor import AskTimeout as AskTimeout
from ._mailbox import Mailbox as Mailbox
from ._mailbox import MailboxFull as MailboxFull
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._mailbox import Reply as Reply
from ._mailbox import reply_errors as reply_errors
from ._runtime import Node as Node
from ._supervisor import ChildSpec as ChildSpec
from ._supervisor import ChildStatistics as ChildStatistics
from ._supervisor import StartChild as StartChild
from ._supervisor import StopChild as StopChild
from ._supervisor import Supervisor as Supervisor
from ._supervisor import SupervisorEscalation as SupervisorEscalation
from ._supervisor import SupervisorEvent as SupervisorEvent
from ._supervisor import SupervisorStatistics as SupervisorStatistics
from ._supervisor import open_supervisor as open_supervisor
