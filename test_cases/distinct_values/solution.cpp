#include <algorithm>
#include <cstdio>
#include <vector>

int main() {
    int n;
    if (std::scanf("%d", &n) != 1) return 1;
    std::vector<long long> values(n);
    for (auto &v : values) {
        if (std::scanf("%lld", &v) != 1) return 1;
    }
    std::sort(values.begin(), values.end());
    long long distinct = std::unique(values.begin(), values.end()) - values.begin();
    std::printf("%lld\n", distinct);
    return 0;
}
