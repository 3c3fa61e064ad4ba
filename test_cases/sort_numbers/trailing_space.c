#include <stdio.h>
#include <stdlib.h>

static int compare(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) return 1;
    long long *values = malloc(sizeof *values * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (scanf("%lld", &values[i]) != 1) return 1;
    }
    qsort(values, (size_t)n, sizeof *values, compare);
    for (int i = 0; i < n; i++) printf("%lld ", values[i]);
    printf("\n\n\n");
    free(values);
    return 0;
}
