from payment_window.devstripe.server import main

main()
