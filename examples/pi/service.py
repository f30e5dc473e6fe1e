"""Monte Carlo pi, the service: each task throws darts at the unit square.

Input: JSON {"samples": N, "seed": S}. Output: JSON {"inside": hits, "samples": N}.
"""

from __future__ import annotations

import json
import random

import flame


class PiService(flame.FlameService):
    def on_session_enter(self, context: flame.SessionContext) -> None:
        self.session_id = context.session_id

    def on_task_invoke(self, context: flame.TaskContext) -> bytes:
        request = json.loads(context.input or b"{}")
        samples = int(request["samples"])
        rng = random.Random(int(request["seed"]))
        inside = 0
        for _ in range(samples):
            x, y = rng.random(), rng.random()
            inside += x * x + y * y <= 1.0
        return json.dumps({"inside": inside, "samples": samples}).encode()

    def on_session_leave(self) -> None:
        pass


if __name__ == "__main__":
    flame.run(PiService())
