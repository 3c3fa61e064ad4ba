"""runtimes.build_commands: the compile and run argv of every language, as both executors render them."""

from __future__ import annotations

import pytest

from backend.models import Limits, SourceFile
from backend.runtimes import SPECS, Commands, Runtime, build_commands

MIB = 1 << 20


def limits(memory_bytes: int = -1) -> Limits:
    return Limits(timeout_ms=3000, cpu_time_ms=3000, memory_bytes=memory_bytes, output_max_size=1024,
                  max_processes=64, max_open_files=64, max_file_size=1 << 20)


def runtime(language: str) -> Runtime:
    """The language's runtime with each binary role resolved to a recognisable path."""
    spec = SPECS[language]
    return Runtime(language, "1.2.3", spec.aliases, spec.provider, spec.compiled,
                   {role: f"/bin/{role}" for role in spec.binaries})


def src(name: str, content: str = "", is_source: bool = True) -> SourceFile:
    return SourceFile(name, content.encode(), is_source)


def commands(language: str, *files: SourceFile, memory_bytes: int = -1) -> Commands:
    return build_commands(runtime(language), files, limits(memory_bytes))


@pytest.mark.parametrize(("language", "run"), [
    # -E -s: no PYTHON* variables, no user site; the script's directory stays on sys.path.
    ("python", ("/bin/python", "-E", "-s", "main.code")),
    ("bash", ("/bin/bash", "main.code")),
    ("ruby", ("/bin/ruby", "main.code")),
    ("php", ("/bin/php", "main.code")),
    ("perl", ("/bin/perl", "main.code")),
    ("javascript", ("/bin/node", "main.code")),
])
def test_interpreted_languages_run_the_main_file(language: str, run: tuple[str, ...]) -> None:
    assert commands(language, src("main.code"), src("helper.code")) == Commands(None, run)


def test_node_heap_is_three_quarters_of_the_memory_limit() -> None:
    assert commands("javascript", src("a.js"), memory_bytes=256 * MIB).run == (
        "/bin/node", "--max-old-space-size=192", "a.js")
    assert commands("javascript", src("a.js"), memory_bytes=4 * MIB).run[1] == "--max-old-space-size=16"  # floor


def test_c_compiles_every_source_but_headers_as_c() -> None:
    got = commands("c", src("file0.code"), src("util.c"), src("util.h"), src("data.bin", is_source=False))
    assert got.compile == ("/bin/cc", "-std=gnu17", "-O2", "-pipe", "-o", "a.out", "-x", "c",
                           "file0.code", "util.c", "-x", "none", "-lm")
    assert got.run == ("./a.out",) and got.renames == ()


def test_cpp_compiles_every_source_but_headers_as_cpp() -> None:
    got = commands("c++", src("main.cpp"), src("a.hpp"), src("b.h"), src("b.cpp"))
    assert got.compile == ("/bin/cxx", "-std=gnu++17", "-O2", "-pipe", "-o", "a.out", "-x", "c++",
                           "main.cpp", "b.cpp")
    assert got.run == ("./a.out",)


def test_go_builds_the_go_files_or_the_main_file() -> None:
    assert commands("go", src("main.go"), src("util.go"), src("notes.txt")).compile == (
        "/bin/go", "build", "-o", "a.out", "main.go", "util.go")
    assert commands("go", src("file0.code")).compile == ("/bin/go", "build", "-o", "a.out", "file0.code")
    assert commands("go", src("main.go")).run == ("./a.out",)


def test_java_renames_to_the_public_class_and_runs_the_main_class() -> None:
    main = "public class Solution {\n  public static void main(String[] a) {}\n}\n"
    got = commands("java", src("file0.code", main), src("Helper.java", "class Helper {}"),
                   memory_bytes=256 * MIB)
    assert got.renames == (("file0.code", "Solution.java"),)
    assert got.compile == ("/bin/javac", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1", "-encoding", "UTF-8",
                           "-d", ".", "Solution.java", "Helper.java")
    assert got.run == ("/bin/java", "-XX:+UseSerialGC", "-Xss64m", "-Xmx192m", "-cp", ".", "Solution")


def test_java_without_a_public_class_finds_main_and_gets_a_java_name() -> None:
    source = "class Helper {}\nclass Program {\n  static void main(String[] a) {}\n}\n"
    got = commands("java", src("prog.txt", source))
    assert got.renames == (("prog.txt", "prog.java"),)
    assert got.run == ("/bin/java", "-XX:+UseSerialGC", "-Xss64m", "-cp", ".", "Program")  # no -Xmx: no limit


def test_every_known_language_has_commands() -> None:
    for language, spec in SPECS.items():
        got = commands(language, src("main.code", "public class Main { static void main(String[] a) {} }"))
        assert got.run, language
        assert (got.compile is not None) == spec.compiled, language


def test_an_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="no commands for cobol"):
        build_commands(Runtime("cobol", "1.0.0", (), None, False, {}), [src("a.cob")], limits())
