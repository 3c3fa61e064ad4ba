#include <stdio.h>

int main(void) {
    int n;
    long long x, best = 0;
    if (scanf("%d", &n) != 1) return 1;
    for (int i = 0; i < n; i++) {
        if (scanf("%lld", &x) != 1) return 1;
        if (i == 0 || x > best) best = x;
    }
    printf("%lld\n", best);
    return 0;
}
