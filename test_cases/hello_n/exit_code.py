import sys

n = int(input())
for _ in range(n):
    print("Hello")
sys.exit(3)
