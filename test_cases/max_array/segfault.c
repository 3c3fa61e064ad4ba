#include <stdio.h>
#include <stdlib.h>

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long *values = NULL;
    if (n > 1000000) values = malloc(sizeof *values * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (scanf("%lld", &values[i]) != 1) return 1;
    }
    long long best = values[0];
    for (int i = 1; i < n; i++) if (values[i] > best) best = values[i];
    printf("%lld\n", best);
    return 0;
}
