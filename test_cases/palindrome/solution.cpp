#include <cctype>
#include <iostream>
#include <string>

int main() {
    std::string line, kept;
    std::getline(std::cin, line);
    for (unsigned char c : line) {
        if (std::isalnum(c)) kept += (char)std::tolower(c);
    }
    std::cout << (std::string(kept.rbegin(), kept.rend()) == kept ? "YES" : "NO") << "\n";
    return 0;
}
