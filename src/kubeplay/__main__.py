from kubeplay.cli.app import main

main()
