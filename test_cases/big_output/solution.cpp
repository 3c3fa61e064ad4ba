#include <cstdio>
#include <string>

int main() {
    int n;
    if (std::scanf("%d", &n) != 1) return 1;
    std::string out;
    for (int i = 1; i <= n; i++) {
        out += std::to_string(i);
        out += '\n';
    }
    std::fputs(out.c_str(), stdout);
    return 0;
}
