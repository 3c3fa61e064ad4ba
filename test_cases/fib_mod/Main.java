import java.util.Scanner;

public class Main {
    public static void main(String[] args) {
        final long mod = 1_000_000_007L;
        int n = new Scanner(System.in).nextInt();
        long a = 0, b = 1;
        for (int i = 0; i < n; i++) {
            long next = (a + b) % mod;
            a = b;
            b = next;
        }
        System.out.println(a);
    }
}
