from exporter.main import main

main()
