import sys

n = int(sys.stdin.readline())
block = "".join(f"{i}\n" for i in range(1, n + 1))
while True:
    sys.stdout.write(block)
