from bgstream import main

main()
