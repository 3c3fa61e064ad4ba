#include <stdio.h>

static unsigned long long gcd(unsigned long long a, unsigned long long b) {
    while (b) {
        unsigned long long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int main(void) {
    int t;
    if (scanf("%d", &t) != 1) return 1;
    while (t--) {
        unsigned long long a, b;
        if (scanf("%llu %llu", &a, &b) != 2) return 1;
        unsigned long long g = gcd(a, b);
        printf("%llu %llu\n", g, a / g * b);
    }
    return 0;
}
