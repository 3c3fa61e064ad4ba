#include <cstdio>
#include <vector>

int main() {
    int n;
    if (std::scanf("%d", &n) != 1) return 1;
    std::vector<char> seen(1u << 29, 1);  // 512 MiB, every page written; 1 = unseen
    long long count = 0;
    for (int i = 0; i < n; i++) {
        int x;
        if (std::scanf("%d", &x) != 1) return 1;
        if (seen[x]) {
            seen[x] = 0;
            count++;
        }
    }
    std::printf("%lld\n", count);
    return 0;
}
