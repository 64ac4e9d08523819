from log_miner.main import main

main()
