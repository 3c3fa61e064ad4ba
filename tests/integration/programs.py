"""Small programs per language used by the conformance and hostile suites."""

from __future__ import annotations

# language -> (file name, program reading one line and printing "hello <line>" then exiting 3)
ECHO_EXIT3: dict[str, tuple[str, str]] = {
    "python": ("main.py", "import sys\nname = input()\nprint('hello', name)\nsys.exit(3)\n"),
    "c": ("main.c", '#include <stdio.h>\nint main(void){char s[64];scanf("%63s",s);printf("hello %s\\n",s);return 3;}\n'),
    "c++": ("main.cpp", "#include <iostream>\n#include <string>\nint main(){std::string s;std::cin>>s;"
            "std::cout<<\"hello \"<<s<<std::endl;return 3;}\n"),
    "java": ("Main.java", "import java.util.*;\npublic class Main { public static void main(String[] a) {"
             " Scanner in = new Scanner(System.in); System.out.println(\"hello \" + in.next()); System.exit(3); } }\n"),
    "javascript": ("main.js", "const s = require('fs').readFileSync(0, 'utf8').trim();"
                   "console.log('hello ' + s); process.exit(3);\n"),
    "bash": ("main.sh", "read s\necho \"hello $s\"\nexit 3\n"),
    "perl": ("main.pl", "my $s = <STDIN>; chomp $s; print \"hello $s\\n\"; exit 3;\n"),
    "ruby": ("main.rb", "s = gets.strip\nputs \"hello #{s}\"\nexit 3\n"),
    "php": ("main.php", "<?php $s = trim(fgets(STDIN)); echo \"hello $s\\n\"; exit(3);\n"),
    "go": ("main.go", "package main\nimport (\"fmt\"; \"os\")\nfunc main() { var s string; fmt.Scan(&s);"
           " fmt.Println(\"hello \" + s); os.Exit(3) }\n"),
}

# language -> program that does not compile
COMPILE_ERROR: dict[str, tuple[str, str]] = {
    "c": ("main.c", "int main(void) { return undefined_name; }\n"),
    "c++": ("main.cpp", "int main() { return undefined_name; }\n"),
    "java": ("Main.java", "public class Main { public static void main(String[] a) { int x = ; } }\n"),
    "go": ("main.go", "package main\nfunc main() { x := }\n"),
}

# language -> program allocating and touching ~1 GB
MEMORY_HOG: dict[str, tuple[str, str]] = {
    "python": ("main.py", "x = bytearray(1024 * 1024 * 1024)\nprint(len(x))\n"),
    "c": ("main.c", "#include <stdlib.h>\n#include <string.h>\n#include <stdio.h>\n"
          "int main(void){size_t n=1024UL*1024*1024;volatile char*p=malloc(n);if(!p){puts(\"null\");return 1;}"
          "long s=0;for(size_t i=0;i<n;i+=4096)p[i]=(char)i;for(size_t i=0;i<n;i+=4096)s+=p[i];"
          "printf(\"%ld\\n\",s);return 0;}\n"),
    "java": ("Main.java", "public class Main { public static void main(String[] a) {"
             " byte[][] b = new byte[1024][]; for (int i = 0; i < 1024; i++) b[i] = new byte[1024 * 1024];"
             " System.out.println(b.length); } }\n"),
    "javascript": ("main.js", "const a = []; for (let i = 0; i < 1024; i++) a.push(Buffer.alloc(1024 * 1024, 1));"
                   " const b = []; for (let i = 0; i < 3e7; i++) b.push({i}); console.log(a.length, b.length);\n"),
}
