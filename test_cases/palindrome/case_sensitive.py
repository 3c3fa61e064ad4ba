kept = [c for c in input() if c.isascii() and c.isalnum()]
print("YES" if kept == kept[::-1] else "NO")
