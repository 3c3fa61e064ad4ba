import sys

sys.setrecursionlimit(10_000)
MOD = 1_000_000_007


def fib(n: int) -> int:
    return n if n < 2 else (fib(n - 1) + fib(n - 2)) % MOD


print(fib(int(input())))
