import java.io.DataInputStream;
import java.io.IOException;

public class Main {
    private static final DataInputStream IN = new DataInputStream(System.in);

    private static long nextLong() throws IOException {
        int c = IN.read();
        while (c == ' ' || c == '\n' || c == '\r') c = IN.read();
        boolean negative = c == '-';
        if (negative) c = IN.read();
        long value = 0;
        while (c >= '0' && c <= '9') {
            value = value * 10 + (c - '0');
            c = IN.read();
        }
        return negative ? -value : value;
    }

    public static void main(String[] args) throws IOException {
        long n = nextLong();
        long sum = 0;
        for (long i = 0; i < n; i++) sum += nextLong();
        System.out.println(sum);
    }
}
