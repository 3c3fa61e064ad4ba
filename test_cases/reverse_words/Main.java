import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

public class Main {
    public static void main(String[] args) throws IOException {
        String line = new BufferedReader(new InputStreamReader(System.in)).readLine().trim();
        List<String> words = Arrays.asList(line.split("\\s+"));
        Collections.reverse(words);
        System.out.println(String.join(" ", words));
    }
}
