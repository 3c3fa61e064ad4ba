#include <stdio.h>

int main(void) {
    int n, x;
    int sum = 0;
    if (scanf("%d", &n) != 1) return 1;
    for (int i = 0; i < n; i++) {
        if (scanf("%d", &x) != 1) return 1;
        sum = (int)((unsigned)sum + (unsigned)x);
    }
    printf("%d\n", sum);
    return 0;
}
