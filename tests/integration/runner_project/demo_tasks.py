"""Functions and classes that tests/integration/test_runner.py runs through flamepy's Runner."""

from __future__ import annotations

import os


def square(x: int) -> int:
    return x * x


def total(values: list[int]) -> int:
    return sum(values)


def table(rows: list[list[int]]) -> str:
    import tabulate  # installed on the executor from this project's declared dependencies

    return str(tabulate.tabulate(rows, tablefmt="plain"))


def where_is_tabulate() -> str:
    import tabulate

    return str(tabulate.__file__)


def slow(x: int, delay: float) -> int:
    import time

    time.sleep(delay)
    return x


def explode(x: int) -> int:
    raise ValueError(f"remote explosion on {x}")


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.pid = os.getpid()

    def add(self, n: int) -> int:
        self.count += n
        return self.count


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"
