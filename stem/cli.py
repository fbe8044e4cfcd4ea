"""The ``stem`` command line.

Each command or group lives in a module of :mod:`stem._cli`; registering a
new one (``stem schedule``, ``stem wf``, ``stem inspect``, ``stem control``,
``stem demo``) is one line in :data:`COMMANDS`: ``"module:attribute"`` naming
a ``click.Command`` or ``click.Group``.
"""

from __future__ import annotations

import importlib

import click

from ._cli._common import report_unexpected
from ._version import __version__

#: The registered commands, in the order ``stem --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "stem._cli.worker:worker",
    "stem._cli.tasks:tasks",
    "stem._cli.tasks:enqueue",
    "stem._cli.tasks:result",
    "stem._cli.tasks:revoke",
    "stem._cli.queues:queues",
    "stem._cli.queues:purge",
    "stem._cli.dlq:dlq",
    "stem._cli.control:inspect",
    "stem._cli.control:control",
    "stem._cli.schedule:schedule",
    "stem._cli.health:health",
    "stem._cli.keys:keys",
    "stem._cli.events:events",
    "stem._cli.dashboard:dashboard",
    "stem._cli.db:db",
    "stem._cli.workflows:wf",
)


class _OrderedGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; an error it did not expect is one line on stderr
        (exit 1), never a traceback, unless ``STEM_DEBUG=1``."""
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            report_unexpected(exc)


@click.group(
    cls=_OrderedGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, "--version", "-V", prog_name="stem")
def main() -> None:
    """Stem: background jobs, schedules and durable workflows on Trio.

    Commands that talk to a backend take --url (or STEM_BROKER_URL); those
    that need your tasks take --app pkg.module:app (or STEM_APP).
    Run `stem COMMAND --help` for the options and examples of each.
    """


def _register(group: click.Group, specs: tuple[str, ...]) -> None:
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{spec} is not a click command")
        group.add_command(command)


_register(main, COMMANDS)

if __name__ == "__main__":
    main()
