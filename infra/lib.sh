# shellcheck shell=bash
# Shared by deploy.sh and teardown.sh (sourced, not run): messages and stop-at-first-error.
# The sourcing script sets PROG first.

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
step() {
    STEP="$*"
    printf '\n==> %s\n' "$*" >&2
}
die() {
    say "error in step '$STEP': $*"
    exit 1
}
on_error() {
    local rc=$?
    # Report once, from the main shell (command substitutions inherit the trap).
    if [[ "$BASH_SUBSHELL" -eq 0 ]]; then
        say "FAILED in step '$STEP' (exit status $rc); nothing after it ran."
    fi
    exit "$rc"
}
trap on_error ERR
