#include <stdio.h>

int main(void) {
    unsigned long long n;
    if (scanf("%llu", &n) != 1) return 1;
    volatile unsigned long long total = 0;
    for (unsigned long long i = 1; i <= n; i++) total += i;
    printf("%llu\n", (unsigned long long)total);
    return 0;
}
