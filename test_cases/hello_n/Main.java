import java.util.Scanner;

public class Main {
    public static void main(String[] args) {
        int n = new Scanner(System.in).nextInt();
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < n; i++) out.append("Hello\n");
        System.out.print(out);
    }
}
