read -r n
for ((i = 0; i < n; i++)); do
    echo Hello
done
