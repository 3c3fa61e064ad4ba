data = open(0).read().split()
n = int(data[0])
values = [int(x) for x in data[1:n + 1]]
best = values[0]
for i in range(1, n + 1):
    best = max(best, values[i])
print(best)
