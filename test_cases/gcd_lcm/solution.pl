use strict;
use warnings;

my @data = split ' ', do { local $/; <STDIN> };
my $t = shift @data;
for (1 .. $t) {
    my ($a, $b) = (shift @data, shift @data);
    my ($x, $y) = ($a, $b);
    ($x, $y) = ($y, $x % $y) while $y;
    printf "%d %d\n", $x, $a / $x * $b;
}
