data = open(0).read().split()
n = int(data[0])
print(len(set(data[1:n + 1])))
