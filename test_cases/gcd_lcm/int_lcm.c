#include <stdio.h>

static int gcd(int a, int b) {
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

int main(void) {
    int t;
    if (scanf("%d", &t) != 1) return 1;
    while (t--) {
        int a, b;
        if (scanf("%d %d", &a, &b) != 2) return 1;
        int g = gcd(a, b);
        int lcm = (int)((unsigned)(a / g) * (unsigned)b);
        printf("%d %d\n", g, lcm);
    }
    return 0;
}
