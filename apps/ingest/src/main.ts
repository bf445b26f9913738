import 'reflect-metadata';
import { launch } from '@thorax/observability';
import { ingestService } from './service';

void launch(ingestService, process.env);
