import java.util.Scanner;

public class TypeMismatch {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        int words = in.nextLine();
        System.out.println(words);
    }
}
