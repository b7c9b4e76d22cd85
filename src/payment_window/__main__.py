from payment_window.cli import main

main()
