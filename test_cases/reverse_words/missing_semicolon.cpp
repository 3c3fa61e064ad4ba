#include <iostream>
#include <sstream>
#include <string>
#include <vector>

int main() {
    std::string line, word;
    std::getline(std::cin, line);
    std::istringstream in(line);
    std::vector<std::string> words
    while (in >> word) words.push_back(word);
    for (size_t i = words.size(); i-- > 0;) std::cout << words[i] << (i ? " " : "\n");
    return 0;
}
