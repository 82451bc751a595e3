# The two ends of the step-output benchmark (bench/step-output.ts), in perl-base (on every Debian,
# no module beyond the core) so that neither end costs more than a syscall loop:
#
#   perl output-tools.pl write lines|long stdout|stderr BYTES
#       writes BYTES as a program prints: 80-byte lines ("x" × 79 and a newline) one print each,
#       through an 8 KiB stdio buffer; or one line with no newline at all, printed 1 MB at a time
#   perl output-tools.pl drain STALL
#       reads stdin to its end and prints the byte count; with STALL=1 it stops reading for one
#       second after the first MiB (a slow log collector), so the writer upstream must hold back
use strict;
use warnings;

my $mode = shift @ARGV;
if ($mode eq 'write') {
    my ($shape, $stream, $total) = @ARGV;
    # A handle of our own on the fd: buffered like C's stdio or Go's bufio, stderr too (perl's
    # STDERR writes every print through at once).
    open(my $fh, '>&=', $stream eq 'stderr' ? 2 : 1) or die "open: $!\n";
    if ($shape eq 'long') {
        die "BYTES must be a multiple of 1000000\n" if $total % 1_000_000;
        my $chunk = 'x' x 1_000_000;
        print $fh $chunk for 1 .. $total / 1_000_000;
    } else {
        die "BYTES must be a multiple of 80\n" if $total % 80;
        my $line = ('x' x 79) . "\n";
        print $fh $line for 1 .. $total / 80;
    }
    close $fh or die "write: $!\n";
} elsif ($mode eq 'drain') {
    my $stall = shift @ARGV;
    my ($n, $buf) = (0, '');
    while (my $r = sysread(STDIN, $buf, 1 << 20)) {
        $n += $r;
        if ($stall && $n >= 1 << 20) {
            sleep 1;
            $stall = 0;
        }
    }
    print "$n\n";
} else {
    die "usage: output-tools.pl write lines|long stdout|stderr BYTES | drain 0|1\n";
}
