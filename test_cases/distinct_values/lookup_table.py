import sys

data = sys.stdin.buffer.read().split()
n = int(data[0])
seen = bytearray(b"\x00") * (1 << 29)  # 512 MiB, every page written
count = 0
for token in data[1:n + 1]:
    x = int(token)
    if not seen[x]:
        seen[x] = 1
        count += 1
print(count)
