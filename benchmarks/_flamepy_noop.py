"""A no-op service written with unmodified flamepy 0.6.0: every task returns its input.

benchmarks/throughput.py registers it as an application whose command is this script, so the
executor manager runs it exactly as it runs any flamepy service (``flamepy.run`` serving the
Instance API on $FLAME_INSTANCE_ENDPOINT).
"""

from __future__ import annotations

import flamepy  # type: ignore[import-untyped]


class Noop(flamepy.FlameService):
    def on_session_enter(self, context: flamepy.SessionContext) -> None:
        pass

    def on_task_invoke(self, context: flamepy.TaskContext) -> bytes | None:
        data: bytes | None = context.input
        return data

    def on_session_leave(self) -> None:
        pass


if __name__ == "__main__":
    flamepy.run(Noop())
