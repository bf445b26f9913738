from thorax_trainer.cli import main

raise SystemExit(main())
