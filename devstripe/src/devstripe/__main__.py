from devstripe.server import main

main()
