#include <cstdio>

int main() {
    const long long MOD = 1000000007LL;
    long long n;
    if (std::scanf("%lld", &n) != 1) return 1;
    long long a = 0, b = 1;
    for (long long i = 0; i < n; i++) {
        long long next = (a + b) % MOD;
        a = b;
        b = next;
    }
    std::printf("%lld\n", a);
    return 0;
}
